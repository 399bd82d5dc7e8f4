"""The portal in a real browser: Debian's headless Chromium driven by Selenium through
/usr/bin/chromedriver (no driver or browser download). Screenshots of every page at 1280x800 and
at a 390x844 phone are written under the test's tmp directory."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import openpyxl
import pytest

from api.commission.export import LEVEL_SHEETS, ROW_HEADER
from tests.api import reportdata
from tests.api import test_commission as tc
from tests.api import worked_example as wx
from tests.api.harness import ApiServer
from tests.conftest import IN_CI
from tests.portal.conftest import AT, FOREIGN

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        # like every real server of the suite: missing is a failure, never a skip
        pytest.fail(
            f"{', '.join(missing)} missing: apt-get install chromium chromium-driver "
            f"(deploy/setup.sh does) (CI={'true' if IN_CI else os.environ.get('CI', '')})",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1280,800")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs",
        {
            "intl.accept_languages": "zh-CN,zh",
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
        },
    )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    try:
        yield driver
    finally:
        driver.quit()


class Shots:
    """Screenshots of the current page at every size; checks the layout fits the width."""

    def __init__(self, driver: Any, out: Path) -> None:
        self.driver, self.out, self.files = driver, out, []
        out.mkdir(parents=True, exist_ok=True)

    def take(self, name: str) -> None:
        for size, (w, h) in SIZES.items():
            self.driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": size == "phone"},
            )
            width = self.driver.execute_script("return document.documentElement.scrollWidth")
            assert width <= w, f"{name} at {w} px is {width} px wide (scrolls sideways)"
            path = self.out / f"{name}-{size}-{w}x{h}.png"
            assert self.driver.save_screenshot(str(path))
            self.files.append(path)
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def click_and_wait(driver: Any, element_id: str, *, css: str | None = None) -> None:
    """Click and wait until the next page has replaced this one (a form post or a link)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    if css is not None:
        driver.find_element(By.CSS_SELECTOR, css).click()
    else:
        driver.find_element(By.ID, element_id).click()

    def replaced(_: Any) -> bool:
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            # Chromium, mid-navigation, says the old node left the document in other words
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    WebDriverWait(driver, 20).until(replaced)


def _kpis(driver: Any, css: str) -> dict[str, float | None]:
    from selenium.webdriver.common.by import By

    out: dict[str, float | None] = {}
    for el in driver.find_element(By.CSS_SELECTOR, css).find_elements(
        By.CSS_SELECTOR, "[data-kpi]"
    ):
        raw = el.get_attribute("data-value")
        out[el.get_attribute("data-kpi")] = float(raw) if raw else None
    return out


def test_engineer_logs_in_and_sees_the_worked_example(
    browser: Any, portal_server: ApiServer, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    shots = Shots(browser, tmp_path / "screenshots")
    page = f"{portal_server.url}/portal/sites/{wx.SITE}?at={AT.replace('+', '%2B')}"
    browser.get(page)
    assert urlsplit(browser.current_url).path == "/portal/login"  # no session yet
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    shots.take("login")

    browser.find_element(By.ID, "token").send_keys("zz_wrong")
    click_and_wait(browser, "login")
    error = browser.find_element(By.ID, "token-error")
    assert "令牌未知、已吊销或已过期" in error.text
    assert browser.find_element(By.ID, "token").get_attribute("aria-invalid") == "true"
    shots.take("login-error")

    browser.find_element(By.ID, "token").send_keys(portal_server.tokens["engineer"])
    click_and_wait(browser, "login")
    back = urlsplit(browser.current_url)
    assert back.path == f"/portal/sites/{wx.SITE}" and parse_qs(back.query)["at"] == [AT]
    assert all(
        c["name"] != "zz_portal"
        for c in browser.execute_script(
            "return document.cookie.split('; ').map(c => ({name: c.split('=')[0]}))"
        )
    )  # fmt: skip  (HttpOnly: invisible to scripts)

    api = portal_server.json(f"/api/v1/sites/{wx.SITE}/lines/{wx.LINE}/live", "engineer", at=AT)
    rows = {r["asset"]["machine"]: r for r in api["kpis"]["shift"]["machine"]}
    for machine, want in wx.EXPECTED.items():
        shown = _kpis(browser, f'tr[data-machine="{machine}"]')
        for kpi in ("oee", "availability", "effectiveness", "quality", "kwh_per_good"):
            assert shown[kpi] == rows[machine]["kpis"][kpi]["value"], (machine, kpi)
        for kpi in ("oee", "availability", "effectiveness", "quality"):
            assert shown[kpi] == pytest.approx(want[kpi], abs=1e-6), (machine, kpi)
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-machine="{machine}"]')
        gq = row.find_element(By.CSS_SELECTOR, '[data-count="gq"]').text
        assert int(gq) == want["gq"]
        oee_text = row.find_element(By.CSS_SELECTOR, '[data-kpi="oee"]').text
        assert oee_text == f"{want['oee'] * 100:.1f} %"
    line = _kpis(browser, '[data-total="line"]')
    assert line["oee"] == api["kpis"]["shift"]["line"][0]["kpis"]["oee"]["value"]
    assert line["oee"] == pytest.approx(wx.LINE_OEE, abs=1e-6)
    shots.take("engineer")

    click_and_wait(browser, "lang-en")
    here = urlsplit(browser.current_url)
    assert here.path == f"/portal/sites/{wx.SITE}" and parse_qs(here.query)["at"] == [AT]
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert "line overview" in browser.find_element(By.TAG_NAME, "h1").text
    shots.take("engineer-en")

    browser.get(f"{portal_server.url}/portal/")
    assert browser.find_element(By.CSS_SELECTOR, f'[data-site="{wx.SITE}"]')
    shots.take("home")
    browser.get(f"{portal_server.url}/portal/sites/{FOREIGN}")
    assert "does not exist" in browser.find_element(By.ID, "error-message").text
    shots.take("not-found")

    click_and_wait(browser, "logout")
    assert urlsplit(browser.current_url).path == "/portal/login"
    browser.get(page)
    assert urlsplit(browser.current_url).path == "/portal/login"

    assert len(shots.files) == 2 * 6
    for png in shots.files:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, png


def _login(driver: Any, server: ApiServer, token: str, path: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{server.url}{path}")
    assert urlsplit(driver.current_url).path == "/portal/login"
    driver.find_element(By.ID, "token").send_keys(server.tokens[token])
    click_and_wait(driver, "login")
    assert urlsplit(driver.current_url).path == path.split("?")[0]


def _fill(driver: Any, values: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    for fid, value in values.items():
        box = driver.find_element(By.ID, f"f-{fid}")
        box.clear()
        box.send_keys(str(value))


def test_factory_admin_submits_corrects_and_reads_the_history(
    browser: Any, portal_server: ApiServer, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    shots = Shots(browser, tmp_path / "screenshots")
    path = f"/portal/sites/{wx.SITE}/reports/2021"
    _login(browser, portal_server, "factory_admin", path)
    shots.take("report-empty")

    _fill(browser, {**reportdata.ANNUAL, "average_headcount": -3})
    click_and_wait(browser, "submit")
    block = browser.find_element(By.CSS_SELECTOR, '[data-field="average_headcount"]')
    assert "invalid" in block.get_attribute("class")
    assert block.find_element(By.CSS_SELECTOR, ".field-error").text  # the sentence, at the field
    assert block.find_element(By.TAG_NAME, "input").get_attribute("value") == "-3"
    assert browser.find_element(By.ID, "f-park").get_attribute("value") == "Zhangjiang"
    assert browser.find_elements(By.CSS_SELECTOR, ".field.invalid") == [block]
    assert portal_server.get(f"/api/v1/sites/{wx.SITE}/reports/2021").status_code == 404
    shots.take("report-refused")

    _fill(browser, {"average_headcount": 420})
    click_and_wait(browser, "submit")
    assert "修订 1" in browser.find_element(By.ID, "notice").text
    assert portal_server.json(f"/api/v1/sites/{wx.SITE}/reports/2021")["revision"] == 1

    _fill(browser, {"rd_spend_10k_cny": 380, "reason": "R&D spend audited"})
    click_and_wait(browser, "submit")
    assert "修订 2" in browser.find_element(By.ID, "notice").text
    shots.take("report-saved")

    click_and_wait(browser, "history")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-revision]")
    assert [r.get_attribute("data-revision") for r in rows] == ["2", "1"]
    assert "R&D spend audited" in rows[0].text and "factory_admin" in rows[0].text
    changed = rows[0].find_elements(By.CSS_SELECTOR, "[data-changed]")
    assert [c.get_attribute("data-changed") for c in changed] == ["rd_spend_10k_cny"]
    api = portal_server.json(f"/api/v1/sites/{wx.SITE}/reports/2021/revisions")
    assert [r["revision"] for r in api] == [1, 2] and api[1]["reason"] == "R&D spend audited"
    shots.take("report-history")
    assert all(p.stat().st_size > 1000 for p in shots.files) and len(shots.files) == 8


def test_commission_opens_the_table_drills_down_and_downloads_the_xlsx(
    browser: Any, commission_server: ApiServer, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    shots = Shots(browser, tmp_path / "screenshots")
    _login(browser, commission_server, "commission", "/portal/commission")
    Select(browser.find_element(By.ID, "cohort")).select_by_value("panel")
    Select(browser.find_element(By.ID, "year")).select_by_value(str(tc.YEAR))
    click_and_wait(browser, "show")
    here = parse_qs(urlsplit(browser.current_url).query)
    assert here == {"cohort": ["panel"], "year": [str(tc.YEAR)]}
    api = commission_server.json(
        "/api/v1/commission/indicators", "commission", cohort="panel", year=tc.YEAR
    )
    cohort_rows = {r["indicator"]: r for r in api["rows"] if r["level"] == "cohort"}
    table = browser.find_element(By.CSS_SELECTOR, 'table[data-level="cohort"]')
    for tr in table.find_elements(By.CSS_SELECTOR, "tr[data-indicator]"):
        raw = tr.find_element(By.CSS_SELECTOR, "[data-value]").get_attribute("data-value")
        want = cohort_rows[tr.get_attribute("data-indicator")]["value"]
        assert (float(raw) if raw else None) == want
    shots.take("commission")

    click_and_wait(browser, "", css='a.drill[data-district="Pudong"]')
    factories = browser.find_elements(By.CSS_SELECTOR, "section.factory")
    assert [f.get_attribute("data-site") for f in factories] == [tc.B1, tc.GREEN]
    shots.take("commission-district")

    browser.back()
    downloads = tmp_path / "downloads"
    browser.find_element(By.ID, "xlsx").click()
    deadline = time.monotonic() + 20
    while not list(downloads.glob("*.xlsx")) and time.monotonic() < deadline:
        time.sleep(0.1)
    (xlsx,) = list(downloads.glob("*.xlsx"))
    assert xlsx.name == f"indicators-panel-{tc.YEAR}.xlsx"
    ws = openpyxl.load_workbook(io.BytesIO(xlsx.read_bytes()))[LEVEL_SHEETS["cohort"]]
    header = [c.value for c in ws[1]]
    assert header == list(ROW_HEADER)
    got = {r[2]: r[header.index("value")] for r in ws.iter_rows(min_row=2, values_only=True)}
    assert set(got) == set(cohort_rows)
    for ind, row in cohort_rows.items():
        if row["value"] is None:
            assert got[ind] in (None, ""), ind
        else:
            assert got[ind] == pytest.approx(row["value"], rel=1e-12), ind
    assert all(p.stat().st_size > 1000 for p in shots.files) and len(shots.files) == 4
