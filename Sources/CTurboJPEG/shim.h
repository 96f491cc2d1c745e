// libjpeg-turbo's TurboJPEG API (Debian: libturbojpeg0-dev).
#if !__has_include(<turbojpeg.h>)
#error "turbojpeg.h not found: install the Debian package libturbojpeg0-dev (make deps does it)"
#endif
#include <turbojpeg.h>
