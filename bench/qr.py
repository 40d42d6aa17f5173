"""What the enrollment page's QR code costs, and what fixing its data mask gives up.

    .venv/bin/python -m bench.qr [--codes 300]

segno scores all eight data masks of ISO/IEC 18004 §7.8.3 and keeps the lowest penalty unless
it is given one. For enrollment URIs of random secrets this prints the time of a code with the
masks scored and with :data:`bridge.factors.totp.QR_MASK` fixed, and for every mask how its
penalty compares with the best one's (median and worst ratio, and how often it is the best),
and how many codes of each kind zxing (as in many authenticator apps) reads back from a PNG.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import segno
from segno import encoder

from bridge.factors import totp


def _uris(count: int) -> list[str]:
    return [totp.provisioning_uri(totp.new_secret(), "Stepup Bridge", f"user{i}@example.org")
            for i in range(count)]


def _penalties(uri: str) -> list[int]:
    """The eight masks' penalty scores, as segno computes them while choosing."""
    scores: list[int] = []
    evaluate = encoder.evaluate_mask

    def recording(matrix, width, height):
        scores.append(evaluate(matrix, width, height))
        return scores[-1]

    encoder.evaluate_mask = recording
    try:
        segno.make(uri, error="m")
    finally:
        encoder.evaluate_mask = evaluate
    return scores


def _ms_per_code(uris: list[str], **options) -> float:
    start = time.process_time()
    for uri in uris:
        segno.make(uri, error="m", **options)
    return (time.process_time() - start) * 1000 / len(uris)


def _misread(uris: list[str], **options) -> int:
    """How many of the codes zxing does not read back as their URI (a flawless PNG, 3 px a
    module, the standard quiet zone)."""
    import zxingcpp  # the tests' QR reader (the dev extra)
    from PIL import Image

    wrong = 0
    for uri in uris:
        png = io.BytesIO()
        segno.make(uri, error="m", **options).save(png, kind="png", scale=3, border=4)
        wrong += [code.text for code in zxingcpp.read_barcodes(Image.open(png))] != [uri]
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=300)
    args = parser.parse_args()
    uris = _uris(args.codes)
    version = segno.make(uris[0], error="m").designator
    print(f"{args.codes} enrollment URIs of random secrets, QR code {version}")
    print(f"  masks scored (segno's default)  {_ms_per_code(uris):6.2f} ms CPU a code")
    print(f"  mask {totp.QR_MASK} fixed (the page's)       "
          f"{_ms_per_code(uris, mask=totp.QR_MASK):6.2f} ms CPU a code")
    print(f"  not read back by zxing: {_misread(uris)} of {len(uris)} scored, "
          f"{_misread(uris, mask=totp.QR_MASK)} of {len(uris)} with mask {totp.QR_MASK}")
    scores = [_penalties(uri) for uri in uris]
    print("  penalty / the best mask's:  mask  median  worst  best in")
    for mask in range(8):
        ratios = [s[mask] / min(s) for s in scores]
        best = sum(s[mask] == min(s) for s in scores)
        print(f"{'':30}{mask:4}  {statistics.median(ratios):6.3f} {max(ratios):6.3f}"
              f"  {best / len(scores):6.0%}")


if __name__ == "__main__":
    main()
