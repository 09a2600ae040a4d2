"""USD helpers shared by the tasks: opening stages with errors turned into stable codes
(stage.py), writing layers so that nothing half-written looks complete (export.py), asset
paths (assets.py), usd-optimize access (optimize.py) and float-precision point instancing
(instancer_precision.py)."""
