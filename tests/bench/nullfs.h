/* The in-process FUSE null filesystem of the isolation benchmark (nullfs.c). */
#ifndef PLUGFS_BENCH_NULLFS_H
#define PLUGFS_BENCH_NULLFS_H

/* Mounts on mnt and serves until unmounted or SIGTERM; the exit status (0 fine). */
int nullfs_main(const char *mnt);

#endif
