"""Clipboard images between Qt and the guests: the types, and decoding within limits.

A guest's image is untrusted: its dimensions are read from the header and checked against
:class:`ImageLimits` before any pixel is decoded, and QImageReader's allocation limit bounds
the rest. Host images are encoded in the type the guest asks for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QImage, QImageReader, QImageWriter

from ..protocol import ClipboardType

log = logging.getLogger(__name__)

#: Image types as (Qt format name, MIME type), in the order we prefer them from a guest:
#: lossless first.
IMAGE_TYPES: dict[ClipboardType, tuple[bytes, str]] = {
    ClipboardType.IMAGE_PNG: (b"png", "image/png"),
    ClipboardType.IMAGE_BMP: (b"bmp", "image/bmp"),
    ClipboardType.IMAGE_TIFF: (b"tiff", "image/tiff"),
    ClipboardType.IMAGE_JPG: (b"jpeg", "image/jpeg"),
}
#: The order image types are offered to a guest (PNG first: the agent's preference).
OFFER_ORDER = (
    ClipboardType.IMAGE_PNG,
    ClipboardType.IMAGE_BMP,
    ClipboardType.IMAGE_JPG,
    ClipboardType.IMAGE_TIFF,
)


def writable_types() -> tuple[ClipboardType, ...]:
    """The image types Qt can write here, in the order they are offered to a guest."""
    writable = {bytes(f.data()).lower() for f in QImageWriter.supportedImageFormats()}
    return tuple(t for t in OFFER_ORDER if IMAGE_TYPES[t][0] in writable)


def readable_types() -> tuple[ClipboardType, ...]:
    """The image types Qt can read here, in the order they are preferred from a guest."""
    readable = {bytes(f.data()).lower() for f in QImageReader.supportedImageFormats()}
    return tuple(t for t in IMAGE_TYPES if IMAGE_TYPES[t][0] in readable)


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Bounds on decoding an image that came from a guest."""

    max_width: int = 32768
    max_height: int = 32768
    max_pixels: int = 50_000_000
    #: QImageReader's allocation limit for one image, MiB (Qt's default is 256).
    allocation_mib: int = 256


def decode_image(data: bytes | bytearray, kind: ClipboardType,
                 limits: ImageLimits) -> tuple[QImage | None, str]:
    """Decode a guest image within :class:`ImageLimits`; (None, why) if not."""
    array = QByteArray(data)
    buffer = QBuffer(array)
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    reader = QImageReader(buffer, IMAGE_TYPES[kind][0])
    reader.setAllocationLimit(limits.allocation_mib)
    size = reader.size()
    if not size.isValid():
        return None, f"it is not a readable {kind.name[6:]} image"
    width, height = size.width(), size.height()
    if (width > limits.max_width or height > limits.max_height
            or width * height > limits.max_pixels):
        return None, (f"{width}×{height} pixels is over the limit of "
                      f"{limits.max_width}×{limits.max_height}, "
                      f"{limits.max_pixels / 1e6:g} megapixels")
    image = reader.read()
    if image.isNull():
        return None, f"it could not be decoded ({reader.errorString()})"
    return image, ""


def encode_image(image: QImage, fmt: bytes) -> bytes | None:
    array = QByteArray()
    buffer = QBuffer(array)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if fmt == b"jpeg" and image.hasAlphaChannel():
        image = image.convertToFormat(QImage.Format.Format_RGB32)
    writer = QImageWriter(buffer, fmt)
    if not writer.write(image):
        log.info("cannot encode the host image as %s: %s", fmt.decode(), writer.errorString())
        return None
    buffer.close()
    return bytes(array.data())
