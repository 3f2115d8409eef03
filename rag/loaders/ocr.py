"""Text recognition (OCR) for scans: Tesseract via `pytesseract`, PDF pages rendered by pypdfium2.

A pharmacy's references are often scans, so a page without a text layer and an
uploaded image are read with Tesseract (Debian's `tesseract-ocr` + `tesseract-ocr-eng`,
installed by scripts/setup_ocr.sh from `make install`). Tesseract is a system program, so it may be
absent: then `available()` is False, the loaders say plainly that scans cannot be
read and how to enable it, and `pharmgpt doctor` reports it. Everything here runs
inside the ingestion sandbox (rag/sandbox.py); the renderer caps a page's pixels so
a page declared 200 inches wide cannot exhaust its memory.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

LANGUAGE = "eng"
DPI = 300
MAX_PIXELS = 25_000_000  # one rendered page or image (a Letter page at 300 dpi is 8.4 MP)
PAGE_TIMEOUT_S = 60.0  # one page; the sandbox's wall clock bounds the whole file

ENABLE_HINT = (
    "To enable it, install Tesseract (on Debian/Ubuntu, as root: "
    "`apt-get install tesseract-ocr tesseract-ocr-eng`, or `bash scripts/setup_ocr.sh`), "
    "then restart PharmGPT."
)
UNAVAILABLE = (
    "text recognition (OCR) is not installed on this server, "
    "so scanned pages and images can't be read."
)

Progress = Callable[[int, int], None]  # (pages OCR'd so far, pages to OCR)


@dataclass(frozen=True)
class OcrStatus:
    available: bool
    detail: str  # the version and languages, or what is missing and how to install it


def status() -> OcrStatus:
    """Whether scans can be read here, for the loaders, the app and `pharmgpt doctor`."""
    exe = shutil.which("tesseract")
    if exe is None:
        return OcrStatus(False, f"tesseract is not installed: {UNAVAILABLE} {ENABLE_HINT}")
    try:
        import pytesseract
    except ImportError:
        return OcrStatus(
            False, "the pytesseract package is missing: reinstall PharmGPT (`make install`)."
        )
    try:
        version = pytesseract.get_tesseract_version()
        languages = pytesseract.get_languages(config="")
    except Exception as e:  # a broken install: say what it said
        return OcrStatus(False, f"tesseract at {exe} does not run ({e}). {ENABLE_HINT}")
    if LANGUAGE not in languages:
        return OcrStatus(
            False,
            f"tesseract {version} has no English data (install tesseract-ocr-eng). {ENABLE_HINT}",
        )
    return OcrStatus(
        True, f"tesseract {version} at {exe} (languages: {', '.join(sorted(languages))})"
    )


def available() -> bool:
    return shutil.which("tesseract") is not None


def recognise(image, timeout: float = PAGE_TIMEOUT_S) -> str:
    """The text Tesseract reads in one PIL image. Raises RuntimeError when it fails or times out."""
    import pytesseract

    try:
        return pytesseract.image_to_string(image, lang=LANGUAGE, timeout=timeout)
    except RuntimeError as e:  # pytesseract's timeout
        raise RuntimeError(f"reading one page took longer than {timeout:g} seconds") from e
    except (pytesseract.TesseractError, OSError) as e:
        raise RuntimeError(str(e)[-500:] or "tesseract failed") from e


def _fit(image):
    """Grey, and scaled down to MAX_PIXELS (Tesseract needs no more to read print)."""
    image = image.convert("L")
    pixels = image.width * image.height
    if pixels > MAX_PIXELS:
        scale = (MAX_PIXELS / pixels) ** 0.5
        image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    return image


def image_frames(data: bytes):
    """Each frame of a PNG, JPEG or (multi-page) TIFF as a grey PIL image, bounded in pixels.

    Raises ValueError when the bytes are not an image Pillow can decode."""
    from PIL import Image, ImageSequence

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS * 4  # past this Pillow refuses (a decompression bomb)
    import io

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(str(e)) from e
    for frame in ImageSequence.Iterator(img):
        yield _fit(frame)


def render_pdf_pages(data: bytes, numbers: list[int]):
    """(number, grey PIL image) for each 1-based page number, rendered at DPI (fewer if huge).

    A page pdfium cannot render yields (number, None)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        for number in numbers:
            try:
                page = pdf[number - 1]
                width, height = page.get_size()  # points
                scale = DPI / 72
                if width * height * scale * scale > MAX_PIXELS:
                    scale = (MAX_PIXELS / (width * height)) ** 0.5
                bitmap = page.render(scale=scale, grayscale=True)
                image = bitmap.to_pil()
                page.close()
            except Exception:  # one unrenderable page should not lose the rest
                yield number, None
                continue
            yield number, image
    finally:
        pdf.close()
