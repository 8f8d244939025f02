package gcs

import "hash/crc32"

// castagnoli is the CRC32C table, the checksum GCS keeps for every object.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32cPoly is the Castagnoli polynomial, bit-reversed as crc32 uses it.
const crc32cPoly = crc32.Castagnoli

// x2nTable[k] is x^(2^k) modulo the polynomial: the operator that appends
// 2^k zero bits to a CRC register. zlib keeps 32 entries and wraps k
// around, which relies on x^(2^32) = x modulo its polynomial; that does
// not hold for Castagnoli's (x^(2^31) = x there), so this table covers
// every k that x2nModP needs for an int64 count of bytes (up to 3+62).
var x2nTable = func() [67]uint32 {
	var t [67]uint32
	p := uint32(1) << 30 // x^1
	t[0] = p
	for k := 1; k < len(t); k++ {
		p = multModP(p, p)
		t[k] = p
	}
	return t
}()

// crc32cCombine returns the CRC32C of A followed by B from crcA, crcB and
// the length of B, without the bytes: zlib's crc32_combine for the
// Castagnoli polynomial. Assemble predicts a composed object's checksum
// from its parts' checksums with it.
func crc32cCombine(crcA, crcB uint32, lenB int64) uint32 {
	if lenB <= 0 {
		return crcA ^ crcB // B is empty, so crcB is 0
	}
	return multModP(x2nModP(lenB, 3), crcA) ^ crcB
}

// multModP returns a(x) * b(x) modulo the polynomial, in the reflected bit
// order of CRC registers (the highest bit is x^0). a must not be zero.
func multModP(a, b uint32) uint32 {
	m := uint32(1) << 31
	var p uint32
	for {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				return p
			}
		}
		m >>= 1
		if b&1 != 0 {
			b = b>>1 ^ crc32cPoly
		} else {
			b >>= 1
		}
	}
}

// x2nModP returns x^(n * 2^k) modulo the polynomial; with k = 3 that is
// the operator for n zero bytes.
func x2nModP(n int64, k uint) uint32 {
	p := uint32(1) << 31 // x^0
	for n != 0 {
		if n&1 != 0 {
			p = multModP(x2nTable[k], p)
		}
		n >>= 1
		k++
	}
	return p
}
