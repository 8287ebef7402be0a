"""The MM-SAG network in torch: backbones, label text, semantic attention, fusion, graph."""

__all__: list[str] = []
