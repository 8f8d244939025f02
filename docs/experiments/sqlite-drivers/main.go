// Command sqlitedrivers times spool's chunk receipt on SQLite through
// three Go drivers: docs/BENCHMARKS.md, "Issue 10: three SQLite drivers
// for a receipt". Not a test and not spool: it sends copies of the
// statements spool sends for a chunk PUT on SQLite (the
// session read joined to the chunk's row, then one transaction of the
// session's UPDATE … RETURNING and the chunk's INSERT; logged by
// TestChunkReceiptStatements at the commit that added this directory),
// prepared once, on one connection, to a copy of a database migrated by
// spool and filled with 30,000 uploads. It prints the process's CPU time
// (getrusage) and wall time per read and per receipt. run.sh builds and
// runs it.
//
//	sqlitedrivers -fill DB              # the filled copy, from a migrated DB
//	sqlitedrivers DRIVER DSN TEMPLATE   # DSN with %s for the database's path
package main

import (
	"database/sql"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // "sqlite"; mattn.go and ncruces.go register "sqlite3"
)

const readSQL = "SELECT `upload_sessions`.`id`, `upload_sessions`.`created_at`, `upload_sessions`.`updated_at`, `upload_sessions`.`owner_id`, `upload_sessions`.`batch_id`, `upload_sessions`.`file_name`, `upload_sessions`.`original_name`, `upload_sessions`.`mime_type`, `upload_sessions`.`media_type`, `upload_sessions`.`total_size`, `upload_sessions`.`sha256`, `upload_sessions`.`fingerprint`, `upload_sessions`.`duration_seconds`, `upload_sessions`.`strategy`, `upload_sessions`.`chunk_size`, `upload_sessions`.`total_chunks`, `upload_sessions`.`status`, `upload_sessions`.`storage_key`, `upload_sessions`.`expires_at`, `upload_sessions`.`error`, `upload_sessions`.`percent`, `upload_sessions`.`version`, `upload_sessions`.`received_chunks`, `upload_sessions`.`received_bytes`, `upload_sessions`.`failed_chunks`, `upload_sessions`.`bytes_freed`, `upload_sessions`.`finished_at`, `upload_sessions`.`resumable_url`, `upload_sessions`.`deduplicated`, `upload_sessions`.`resumable_origin`, `upload_sessions`.`tus`, `upload_sessions`.`tus_part`, `upload_sessions`.`tail_bytes`, `upload_sessions`.`tail_crc32c`, (`held`.`state` || '|' || `held`.`size` || '|' || `held`.`crc32c` || '|' || COALESCE(`held`.`error_code`, '') || '|' || COALESCE(`held`.`digest`, '') || '|' || COALESCE(`held`.`error`, '')) AS `held_chunk` FROM `upload_sessions` LEFT JOIN `upload_chunks` AS `held` ON `upload_sessions`.`id` = `held`.`session_id` AND `held`.`index` = ? WHERE `upload_sessions`.`id` = ?"

const bumpSQL = "UPDATE `upload_sessions` SET `version` = COALESCE(`upload_sessions`.`version`, 0) + ?, `received_chunks` = COALESCE(`upload_sessions`.`received_chunks`, 0) + ?, `received_bytes` = COALESCE(`upload_sessions`.`received_bytes`, 0) + ?, `failed_chunks` = COALESCE(`upload_sessions`.`failed_chunks`, 0) + ?, `percent` = CASE WHEN (`received_bytes` + ?) * 100 / `total_size` > `percent` THEN (`received_bytes` + ?) * 100 / `total_size` ELSE `percent` END, `updated_at` = ? WHERE `id` = ? AND `status` IN (?, ?) AND `expires_at` > ? RETURNING `version`, `percent`, `received_chunks`, `received_bytes`, `failed_chunks`"

const insertSQL = "INSERT INTO `upload_chunks` (`session_id`, `index`, `state`, `size`, `crc32c`, `digest`, `error_code`, `error`, `attempts`, `updated_at`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (`session_id`, `index`) DO NOTHING"

// uploads is how many uploads -fill makes; the runs take them in turn,
// so each receipt is a new chunk of an upload in a table of this size.
const uploads = 30000

const now = "2026-12-06 03:10:00.123456789+00:00" // every time argument, as spool writes times

func main() {
	log.SetFlags(0)
	switch {
	case len(os.Args) == 3 && os.Args[1] == "-fill":
		fill(os.Args[2])
	case len(os.Args) == 4:
		for range 3 {
			run(os.Args[1], os.Args[2], os.Args[3], 20000)
		}
	default:
		log.Fatal("usage: sqlitedrivers -fill DB | sqlitedrivers DRIVER DSN TEMPLATE")
	}
}

// fill adds a user, a batch and the uploads to a database spool
// migrated, every NOT NULL column without a value here given a
// placeholder of its type.
func fill(path string) {
	db, err := sql.Open("sqlite", "file:"+path)
	must(err)
	defer db.Close()
	tx, err := db.Begin()
	must(err)
	insert(tx, "users", map[string]any{"id": "usr_bench"})
	insert(tx, "upload_batches", map[string]any{"id": "bat_1", "owner_id": "usr_bench"})
	for i := range uploads {
		insert(tx, "upload_sessions", map[string]any{
			"id": uploadID(i), "owner_id": "usr_bench", "batch_id": "bat_1", "status": "UPLOADING",
			"expires_at": "2027-12-06 03:00:00+00:00", "total_size": int64(1) << 40, "chunk_size": 8 << 20,
			"total_chunks": 131072, "strategy": "CHUNKED", "media_type": "VIDEO", "version": 1,
		})
	}
	must(tx.Commit())
}

func insert(tx *sql.Tx, table string, values map[string]any) {
	rows, err := tx.Query("SELECT name, type, \"notnull\" FROM pragma_table_info(?)", table)
	must(err)
	var names, marks []string
	var args []any
	for rows.Next() {
		var name, typ string
		var notNull bool
		must(rows.Scan(&name, &typ, &notNull))
		v, ok := values[name]
		if !ok && !notNull {
			continue
		}
		if !ok {
			switch t := strings.ToLower(typ); {
			case strings.Contains(t, "int"), strings.Contains(t, "bool"), strings.Contains(t, "real"):
				v = 0
			case strings.Contains(t, "date"):
				v = now
			case strings.Contains(t, "json"):
				v = "{}"
			default:
				v = "x"
			}
		}
		names, marks, args = append(names, "`"+name+"`"), append(marks, "?"), append(args, v)
	}
	must(rows.Err())
	_, err = tx.Exec("INSERT INTO `"+table+"` ("+strings.Join(names, ", ")+") VALUES ("+strings.Join(marks, ", ")+")", args...)
	must(err)
}

func uploadID(i int) string { return fmt.Sprintf("upl_%06d", i%uploads) }

// run times n session reads, then n receipts, on a fresh copy of
// template opened by driver.
func run(driver, dsn, template string, n int) {
	path := fmt.Sprintf("%s/sqlitedrivers-%s.db", os.TempDir(), driver)
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		_ = os.Remove(p)
	}
	copyFile(path, template)
	db, err := sql.Open(driver, fmt.Sprintf(dsn, path))
	must(err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	read, err := db.Prepare(readSQL)
	must(err)
	bump, err := db.Prepare(bumpSQL)
	must(err)
	ins, err := db.Prepare(insertSQL)
	must(err)
	vals := make([]any, 35)
	dest := make([]any, len(vals))
	for i := range dest {
		dest[i] = &vals[i]
	}
	for i := range 200 { // warm the page cache and the statements
		must(read.QueryRow(i/uploads, uploadID(i)).Scan(dest...))
	}
	if p := os.Getenv("CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		must(err)
		must(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	c0, w0 := cpu(), time.Now()
	for i := range n {
		must(read.QueryRow(i/uploads, uploadID(i)).Scan(dest...))
	}
	c1, w1 := cpu(), time.Now()
	var version, percent, chunks, bytes, failed int64
	for i := range n {
		tx, err := db.Begin()
		must(err)
		must(tx.Stmt(bump).QueryRow(1, 1, 2, 0, 2, 2, now, uploadID(i), "INITIALIZED", "UPLOADING", now).
			Scan(&version, &percent, &chunks, &bytes, &failed))
		_, err = tx.Stmt(ins).Exec(uploadID(i), i/uploads, "RECEIVED", 2, 12345, nil, nil, nil, 1, now)
		must(err)
		must(tx.Commit())
	}
	c2, w2 := cpu(), time.Now()
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	fmt.Printf("%-8s read %6.1f µs CPU (%5.1f wall)   receipt %6.1f µs CPU (%5.1f wall)\n", filepath.Base(os.Args[0]),
		per(c1-c0), per(w1.Sub(w0)), per(c2-c1), per(w2.Sub(w1)))
}

func cpu() time.Duration {
	var ru syscall.Rusage
	must(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func copyFile(dst, src string) {
	in, err := os.Open(src)
	must(err)
	defer in.Close()
	out, err := os.Create(dst)
	must(err)
	_, err = io.Copy(out, in)
	must(err)
	must(out.Close())
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
