//go:build mattn

package main

// The cgo driver: SQLite's C source, built with the C compiler.
import _ "github.com/mattn/go-sqlite3"
