package broker

import "unsafe"

func uintptrOf(c *conn) uintptr { return uintptr(unsafe.Pointer(c)) }
