//go:build ncruces

package main

// SQLite compiled to WebAssembly and run by wazero: no cgo.
import _ "github.com/ncruces/go-sqlite3/driver"
