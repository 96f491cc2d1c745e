// zlib (Debian: zlib1g-dev): deflate and CRC-32 for the PNG files ichd writes (ROC plots).
#if !__has_include(<zlib.h>)
#error "zlib.h not found: install the Debian package zlib1g-dev (make deps does it)"
#endif
#include <zlib.h>
