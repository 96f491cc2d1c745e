// libgpiod v1.6 C API (Debian 12: libgpiod-dev). v2.x changed the API: every call stays behind one backend.
#if !__has_include(<gpiod.h>)
#error "gpiod.h not found: install the Debian package libgpiod-dev (make deps does it)"
#endif
#include <gpiod.h>
