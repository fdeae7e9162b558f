/*
 * The initial content of the `disk` models' images, shared with the tests
 * that check what they read: byte `off` of LUN `lun` is byte off % 8
 * (little-endian) of emu_disk_word(lun, off / 8), a splitmix64 hash, so
 * every 8-byte word differs and a misplaced block shows.
 */
#ifndef PLUGFS_EMU_DISK_PATTERN_H
#define PLUGFS_EMU_DISK_PATTERN_H

#include <stdint.h>

static inline uint64_t emu_disk_word(unsigned lun, uint64_t word)
{
	uint64_t z = word + 0x9e3779b97f4a7c15ull * (lun + 1);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint8_t emu_disk_byte(unsigned lun, uint64_t off)
{
	return (uint8_t)(emu_disk_word(lun, off / 8) >> (8 * (off % 8)));
}

#endif
