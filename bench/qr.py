"""What the enrollment page's QR code costs, and what fixing its data mask gives up.

    .venv/bin/python -m bench.qr [--codes 300]

segno scores all eight data masks of ISO/IEC 18004 §7.8.3 and keeps the lowest penalty unless
it is given one. For enrollment URIs of random secrets this prints the time of a code with the
masks scored and with :data:`bridge.factors.totp.QR_MASK` fixed, and for every mask how its
penalty compares with the best one's (median and worst ratio, and how often it is the best).
"""

from __future__ import annotations

import argparse
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
    scores = [_penalties(uri) for uri in uris]
    print("  penalty / the best mask's:  mask  median  worst  best in")
    for mask in range(8):
        ratios = [s[mask] / min(s) for s in scores]
        best = sum(s[mask] == min(s) for s in scores)
        print(f"{'':30}{mask:4}  {statistics.median(ratios):6.3f} {max(ratios):6.3f}"
              f"  {best / len(scores):6.0%}")


if __name__ == "__main__":
    main()
