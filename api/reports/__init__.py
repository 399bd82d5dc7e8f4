"""Factory reports: the field catalog, validation, revisioned storage, the XLSX template and the
import of filled templates (issue 11, items 1 and 2).

``fields`` is the single source: validation (``validate``), storage (``service``), the template
and import (``template``, ``importer``), the API schema and the docs field table derive from it.
"""
