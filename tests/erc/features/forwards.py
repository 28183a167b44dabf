"""Shared by the cache tests: counting (and failing) the real encoders' forward passes."""

from __future__ import annotations

from transformers import RobertaModel, Wav2Vec2Model


class Forwards:
    """Counts forward passes of the real HF model classes (and can fail the n-th one, as a crash
    mid-build would)."""

    def __init__(self, monkeypatch, fail_at: int | None = None) -> None:
        self.n = 0
        for cls in (Wav2Vec2Model, RobertaModel):
            original = cls.forward

            def forward(model, *args, _original=original, **kwargs):
                self.n += 1
                if fail_at is not None and self.n >= fail_at:
                    raise RuntimeError("simulated crash mid-extraction")
                return _original(model, *args, **kwargs)

            monkeypatch.setattr(cls, "forward", forward)
