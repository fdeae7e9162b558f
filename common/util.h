/*
 * Small helpers shared by the daemon and the driver host.
 */
#ifndef PLUGFS_UTIL_H
#define PLUGFS_UTIL_H

#include <stdint.h>
#include <sys/types.h>

/* Monotonic clock in milliseconds / microseconds. */
uint64_t now_ms(void);
uint64_t now_us(void);

/* Sets O_NONBLOCK and FD_CLOEXEC; 0 or -errno. */
int fd_nonblock_cloexec(int fd);

/* Reads a whole small file into buf (NUL-terminated); bytes read or -errno. */
ssize_t read_small_file(const char *path, char *buf, size_t cap);

/* Defined when built with AddressSanitizer (gcc or clang): its runtime needs more room. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZER_BUILD 1
#endif
#endif

#endif
