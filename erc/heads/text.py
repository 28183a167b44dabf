"""``text``: the text-only baseline, the mirror of :mod:`erc.heads.audio` (DESIGN §13).

t' = W_t t,  h = ReLU(W_h t'),  y = W_o h  (dropout between h and W_o); the audio input is not used.
"""

from __future__ import annotations

from erc.heads.audio import UnimodalHead


class TextHead(UnimodalHead):
    modality = "text"


Head = TextHead
