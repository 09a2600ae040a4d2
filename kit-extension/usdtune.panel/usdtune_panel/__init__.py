"""usdtune.panel: the Kit user's way in. `view_model` is plain Python over the daemon's gRPC
API (tested against a real daemon); `window` is the thin omni.ui layer over it, and
`extension` the Kit entry point. Only `window` and `extension` import omni.*."""
