#!/usr/bin/env bash
# Debian's Tesseract for reading scanned PDFs and images (OCR; rag/loaders/ocr.py drives it
# through pytesseract). Installs only as root on a Debian-like system, as
# tests/e2e/setup_browser.sh does for chromium; elsewhere the app says scans can't be
# read and how to enable them, and `pharmgpt doctor` reports it.
set -u
if command -v tesseract >/dev/null 2>&1 && tesseract --list-langs 2>/dev/null | grep -qx eng; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's tesseract-ocr and tesseract-ocr-eng (OCR for scanned documents)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      tesseract-ocr tesseract-ocr-eng >/dev/null \
    || echo "could not install tesseract: scanned PDFs and images will not be read (see README, OCR)"
else
  echo "tesseract is not installed and this is not root (or there is no apt-get): scanned PDFs and" \
       "images will not be read. To enable OCR: sudo apt-get install tesseract-ocr tesseract-ocr-eng"
fi
exit 0
