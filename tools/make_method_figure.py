"""Composes docs/methods_chelsea.jpg: every method's output for the cat photo, side by side, labelled.

Dev-only (Pillow). First run, from the repository root:

    M=""; for m in gradcam gradcampp xgradcam hirescam layercam gradcam-elementwise eigencam eigengradcam fem \
        randomcam finercam scorecam ablationcam fullgrad saliency guided-backprop guided-gradcam smoothgrad \
        integrated-gradients; do M="$M --method $m"; done
    cargo run --release -- explain fixtures/images/chelsea.png $M --out-dir /tmp/methods
    python tools/make_method_figure.py /tmp/methods
"""

import os
import sys

from PIL import Image, ImageDraw

METHODS = ["gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "gradcam-elementwise", "eigencam",
           "eigengradcam", "fem", "randomcam", "finercam", "scorecam", "ablationcam", "fullgrad", "saliency",
           "guided-backprop", "guided-gradcam", "smoothgrad", "integrated-gradients"]
TILE, LABEL, COLUMNS = (200, 133), 16, 5


def main():
    src = sys.argv[1]
    rows = (len(METHODS) + COLUMNS - 1) // COLUMNS
    sheet = Image.new("RGB", (COLUMNS * TILE[0], rows * (TILE[1] + LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, m in enumerate(METHODS):
        tile = Image.open(os.path.join(src, f"chelsea_285_{m}.png")).convert("RGB").resize(TILE, Image.LANCZOS)
        x, y = (i % COLUMNS) * TILE[0], (i // COLUMNS) * (TILE[1] + LABEL)
        sheet.paste(tile, (x, y + LABEL))
        draw.text((x + 4, y + 2), m, fill="black")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "methods_chelsea.jpg")
    sheet.save(out, quality=85, optimize=True)
    print(out, sheet.size)


if __name__ == "__main__":
    main()
