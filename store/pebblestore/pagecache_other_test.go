//go:build !linux

package pebblestore

import "errors"

// dropPageCache would drop the kernel's page cache: only Linux has a way.
func dropPageCache() error { return errors.New("-coldcache needs Linux") }
