"""The Attention tool: per-head attention, the heads × layers overview, rollout and attribution
of vision transformers over the image."""


def install(window):
    from maskviewer.gui.attention.tool import install as _install

    return _install(window)
