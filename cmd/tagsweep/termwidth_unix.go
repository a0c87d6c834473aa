//go:build unix

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// termWidth returns a function reporting the width of the terminal f in columns (asked
// anew each time, so a resized window is followed), or 80 when it cannot tell.
func termWidth(f *os.File) func() int {
	return func() int {
		ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
		if err != nil || ws.Col == 0 {
			return 80
		}
		return int(ws.Col)
	}
}
