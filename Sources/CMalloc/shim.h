// glibc's malloc tuning (mallopt), which the Glibc module does not export: the process sets its large-buffer
// policy once at start (see ichd's main).
#include <malloc.h>
