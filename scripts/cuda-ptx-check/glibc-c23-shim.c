/* Debian sid's static LLVM is built against glibc >= 2.38, whose C23 headers map strtol and
 * friends to the __isoc23_ names. Debian 12's glibc 2.36 lacks them; these forward to the
 * classic functions (which differ only in not parsing C23's "0b" prefixes). */
#include <stdlib.h>
long __isoc23_strtol(const char *s, char **e, int b) { return strtol(s, e, b); }
long long __isoc23_strtoll(const char *s, char **e, int b) { return strtoll(s, e, b); }
unsigned long long __isoc23_strtoull(const char *s, char **e, int b) { return strtoull(s, e, b); }
