package upload

import "github.com/spoolhq/spool/ent"

// plan is how a file of a given size is cut into chunks.
type plan struct {
	strategy    Strategy
	chunkSize   int64
	totalChunks int
}

// planFile cuts a file of size bytes (size > 0): one SINGLE chunk up to the
// threshold, else CHUNKED at the configured chunk size with a short last
// chunk.
func (c Config) planFile(size int64) plan {
	if size <= c.SingleThreshold {
		return plan{strategy: StrategySingle, chunkSize: size, totalChunks: 1}
	}
	n := (size + c.ChunkSize - 1) / c.ChunkSize
	return plan{strategy: StrategyChunked, chunkSize: c.ChunkSize, totalChunks: int(n)}
}

// chunkRef returns where chunk index lies in an upload of total bytes cut
// at chunkSize; ok is false for an index out of range.
func chunkRef(total, chunkSize int64, totalChunks, index int) (ChunkRef, bool) {
	if index < 0 || index >= totalChunks {
		return ChunkRef{}, false
	}
	off := int64(index) * chunkSize
	size := min(chunkSize, total-off)
	return ChunkRef{Index: index, Offset: off, Size: size}, true
}

// sessionChunk returns where chunk index lies in sess, or INVALID_CHUNK.
func sessionChunk(sess *ent.UploadSession, index int) (ChunkRef, error) {
	ref, ok := chunkRef(sess.TotalSize, sess.ChunkSize, sess.TotalChunks, index)
	if !ok {
		return ChunkRef{}, Errorf(CodeInvalidChunk, "chunk index %d is out of range: upload %s has chunks 0 to %d",
			index, sess.ID, sess.TotalChunks-1)
	}
	return ref, nil
}
