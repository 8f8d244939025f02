package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// moovBeforeMdat reads the top-level box headers of an ISO BMFF file (MP4,
// MOV) and reports whether its moov box (the index a player needs first)
// comes before its first mdat box (the media data). A file whose moov
// follows its mdat cannot start playing until it has downloaded whole.
// It returns an error when the boxes are malformed, or end, before either
// is found.
func moovBeforeMdat(r io.ReaderAt, size int64) (bool, error) {
	var header [16]byte
	for offset := int64(0); offset < size; {
		if size-offset < 8 {
			return false, fmt.Errorf("a box header at byte %d is cut short", offset)
		}
		if _, err := r.ReadAt(header[:8], offset); err != nil {
			return false, err
		}
		boxSize := int64(binary.BigEndian.Uint32(header[:4]))
		boxType := string(header[4:8])
		headerLen := int64(8)
		switch boxSize {
		case 0: // the box runs to the end of the file
			boxSize = size - offset
		case 1: // a 64-bit size follows the type
			if size-offset < 16 {
				return false, fmt.Errorf("the %q box at byte %d is cut short", boxType, offset)
			}
			if _, err := r.ReadAt(header[8:16], offset+8); err != nil {
				return false, err
			}
			largeSize := binary.BigEndian.Uint64(header[8:16])
			if largeSize > uint64(size) {
				return false, fmt.Errorf("the %q box at byte %d claims %d bytes, more than the file", boxType, offset, largeSize)
			}
			boxSize, headerLen = int64(largeSize), 16
		}
		if boxSize < headerLen || boxSize > size-offset {
			return false, fmt.Errorf("the %q box at byte %d claims %d bytes, which does not fit", boxType, offset, boxSize)
		}
		switch boxType {
		case "moov":
			return true, nil
		case "mdat":
			return false, nil
		}
		offset += boxSize
	}
	return false, errors.New("the file has neither a moov nor an mdat box")
}
