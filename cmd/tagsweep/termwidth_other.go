//go:build !unix

package main

import "os"

// termWidth returns a function reporting the width of the terminal f: 80 columns where
// tagsweep cannot ask the terminal.
func termWidth(*os.File) func() int { return func() int { return 80 } }
