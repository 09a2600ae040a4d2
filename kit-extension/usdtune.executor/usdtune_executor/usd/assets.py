"""Asset paths in layers written to a new folder: file-relative paths are re-anchored so they
resolve from where the file lands as they did from where its content came from."""
import os

from pxr import UsdUtils


def source_may_hold_asset_paths(params) -> bool:
    """False only when Phase 2c counted no asset path in any layer of the source stage
    (`source_asset_paths` 0); unknown counts as maybe. Re-anchoring visits every field of
    every spec (0.09 s per 10k prims), so a file copied from such a source skips it."""
    return params.get("source_asset_paths") != 0


def reanchor_asset_paths(layer, source_dir: str, output_dir: str) -> None:
    """Rewrite a layer's file-relative asset paths (./, ../) so they resolve from `output_dir`
    as they did from `source_dir`. Search-path style and absolute paths stay as they are."""
    def reanchor(asset_path: str) -> str:
        if not asset_path or os.path.isabs(asset_path) or ":" in asset_path.split("/")[0]:
            return asset_path
        if not asset_path.startswith(("./", "../")):
            return asset_path
        return os.path.relpath(os.path.normpath(os.path.join(source_dir, asset_path)), output_dir)

    UsdUtils.ModifyAssetPaths(layer, reanchor)
