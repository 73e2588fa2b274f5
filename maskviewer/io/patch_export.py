"""Writing patches and the per-patch table: moved to :mod:`maskviewer.io.export.patches`.

Kept so that ``from maskviewer.io.patch_export import ...`` goes on working.
"""

from maskviewer.io.export.patches import export_npy, export_patch_pngs, export_table_csv

__all__ = ["export_npy", "export_patch_pngs", "export_table_csv"]
