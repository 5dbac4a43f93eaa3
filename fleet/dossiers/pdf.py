"""What the fleet checks in a dossier PDF without a PDF library: whether it has a text layer.

Text in a PDF is drawn with a font, so a page with a text layer has a ``/Font`` resource; the
resource dictionaries may sit inside compressed object streams (PDF 1.5+), so compressed
streams are inflated and searched too (not images' pixels).

>>> has_text_layer(b"%PDF-1.4 1 0 obj << /Resources << /Font << /F1 2 0 R >> >> >> endobj")
True
>>> import zlib
>>> packed = b"stream\\n" + zlib.compress(b"<< /Font << /F1 5 0 R >> >>") + b"\\nendstream"
>>> has_text_layer(b"%PDF-1.7 " + packed), has_text_layer(b"%PDF-1.4 /XObject /Image")
(True, False)
"""

import re
import zlib

_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.DOTALL)
_MAX_INFLATED = 64 * 1024 * 1024


def has_text_layer(data: bytes) -> bool:
    if b"/Font" in data:
        return True
    for found in _STREAM.finditer(data):
        head = data[max(0, found.start() - 512):found.start()]
        if head.rfind(b"/Image") > head.rfind(b"endobj"):  # an image's pixels: no resources inside
            continue
        try:
            inflated = zlib.decompressobj().decompress(found.group(1), _MAX_INFLATED)
        except zlib.error:
            continue  # an image's stream (DCT, JBIG2...): not deflate
        if b"/Font" in inflated:
            return True
    return False
