"""The feature cache's command line::

    python -m erc.features --data ROOT --audio-encoder ID_OR_DIR --text-encoder ID_OR_DIR --cache-dir DIR
    python -m erc.features --data ROOT --demo          # the seeded demo encoders, no hub needed
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from erc.audio import MAX_SECONDS
from erc.features.cache import build_features, default_cache_dir, feature_meta
from erc.features.extract import DEFAULT_BATCH_SECONDS
from erc.vocab import CACHE_ENV, DEFAULT_CACHE_ROOT, LAYER_MODES, PAPER_AUDIO_ENCODER, PAPER_TEXT_ENCODER


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m erc.features",
        description="Run the frozen encoders once per utterance and cache the pooled vectors "
                    "(a Hugging Face Arrow dataset under CACHE/<fingerprint>/).",
    )
    parser.add_argument("--data", required=True, help="data root holding KEMDy19/ and/or KEMDy20_v1_1/")
    parser.add_argument("--audio-encoder", help="wav2vec2 model: local save_pretrained directory or hub id "
                                                f"(paper: {PAPER_AUDIO_ENCODER})")
    parser.add_argument("--text-encoder", help="RoBERTa model: local save_pretrained directory or hub id "
                                               f"(paper: {PAPER_TEXT_ENCODER})")
    parser.add_argument("--demo", action="store_true",
                        help="build the small seeded demo encoders from the corpus transcripts into "
                             "CACHE/demo-encoders and use them (no hub needed)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"feature cache directory (default: ${CACHE_ENV}/features or {DEFAULT_CACHE_ROOT}/features)")
    parser.add_argument("--max-seconds", type=float, default=MAX_SECONDS,
                        help="crop audio to this many seconds; 0 keeps whole files (default 7, the paper's)")
    parser.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS,
                        help="padded audio seconds per forward pass (memory knob; vectors do not change)")
    parser.add_argument("--layers", choices=LAYER_MODES, default="last",
                        help="last: the last layer's vectors (default); all: every hidden layer's too, for heads "
                             "that read another layer or learn a weighted sum (a cache of its own)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.demo == bool(args.audio_encoder or args.text_encoder):
        parser.error("give --audio-encoder and --text-encoder, or --demo")
    if not args.demo and not (args.audio_encoder and args.text_encoder):
        parser.error("both --audio-encoder and --text-encoder are needed")
    from erc.data import load_corpus
    from erc.data.demo_encoders import build_demo_encoders

    cache = args.cache_dir or default_cache_dir()
    corpus = load_corpus(args.data)
    audio_src, text_src = args.audio_encoder, args.text_encoder
    if args.demo:
        audio_src, text_src = build_demo_encoders(cache / "demo-encoders", corpus)
    ds = build_features(corpus, audio_src, text_src, cache, max_seconds=args.max_seconds or None,
                        batch_seconds=args.batch_seconds, device=args.device, layers=args.layers,
                        progress=not args.quiet)
    meta = feature_meta(ds)
    print(f"{ds.num_rows} utterances: audio_vec {meta['audio_encoder']['dim']}-d, "
          f"text_vec {meta['text_encoder']['dim']}-d")
    for modality, stack in (meta.get("layer_stacks") or {}).items():
        print(f"{modality} layers: {stack['shape'][1]} × {stack['shape'][2]}-d, {stack['dtype']} ({stack['file']})")
    print(f"cache: {Path(ds.cache_files[0]['filename']).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
