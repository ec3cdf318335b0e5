//go:build linux

package main

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// serveURing does what serve does through io_uring instead of epoll: one
// multishot accept, and for each connection a receive, the CONNACK's send
// and the next receive queued in the ring and submitted together, one
// io_uring_enter for a whole batch of connections. It asks whether a
// different way into the kernel lowers the floor that epoll's calls set:
// no epoll_ctl, and no system call per accept, read or write.
func serveURing(ln int, direct bool) error {
	r, err := newRing(4096)
	if err != nil {
		return err
	}
	var fixed uint8
	var slot uint32
	cloexec := uint32(unix.SOCK_CLOEXEC)
	if direct {
		reg := struct { // struct io_uring_rsrc_register
			nr, flags   uint32
			resv2, data uint64
			tags        uint64
		}{nr: uint32(nofile()), flags: rsrcRegisterSparse}
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerFiles2, uintptr(unsafe.Pointer(&reg)), unsafe.Sizeof(reg), 0, 0)
		if errno != 0 {
			return fmt.Errorf("register sparse files: %w", errno)
		}
		fixed, slot, cloexec = sqeFixedFile, fileIndexAlloc, 0 // CLOEXEC is refused for direct accepts
	}
	bufs := make(map[int][]byte)
	connack, pingresp := []byte{0x20, 2, 0, 0}, []byte{0xd0, 0}
	accept := func() {
		r.prep(opAccept, ln, 0, 0, cloexec, acceptMultishot, opAccept<<32|uint64(ln))
		r.last().fileIndex = slot
	}
	accept()
	recv := func(fd int) {
		b := bufs[fd]
		if b == nil {
			b = make([]byte, 512)
			bufs[fd] = b
		}
		r.prep(opRecv, fd, uint64(uintptr(unsafe.Pointer(&b[0]))), uint32(len(b)), 0, 0, opRecv<<32|uint64(fd))
		r.last().flags = fixed
	}
	send := func(fd int, b []byte) {
		r.prep(opSend, fd, uint64(uintptr(unsafe.Pointer(&b[0]))), uint32(len(b)), unix.MSG_NOSIGNAL, 0, opSend<<32|uint64(fd))
		r.last().flags = fixed
	}
	closeFD := func(fd int) {
		delete(bufs, fd)
		if direct {
			r.prep(opClose, 0, 0, 0, 0, 0, opClose<<32|uint64(fd))
			r.last().fileIndex = uint32(fd) + 1
			return
		}
		r.prep(opClose, fd, 0, 0, 0, 0, opClose<<32|uint64(fd))
	}
	for {
		if err := r.enter(1); err != nil {
			return err
		}
		r.each(func(userData uint64, res int32, flags uint32) {
			fd := int(uint32(userData))
			switch userData >> 32 {
			case opAccept:
				if res >= 0 {
					recv(int(res))
				}
				if flags&cqeMore == 0 {
					accept()
				}
			case opRecv:
				if res <= 0 {
					closeFD(fd)
					return
				}
				switch bufs[fd][0] >> 4 {
				case 1: // CONNECT
					send(fd, connack)
					recv(fd)
				case 12: // PINGREQ
					send(fd, pingresp)
					recv(fd)
				case 14: // DISCONNECT
					closeFD(fd)
				default:
					recv(fd)
				}
			}
		})
	}
}

const (
	opAccept = 13 // IORING_OP_ACCEPT
	opClose  = 19 // IORING_OP_CLOSE
	opSend   = 26 // IORING_OP_SEND
	opRecv   = 27 // IORING_OP_RECV

	acceptMultishot    = 1 << 0     // IORING_ACCEPT_MULTISHOT, in the SQE's ioprio
	sqeFixedFile       = 1 << 0     // IOSQE_FIXED_FILE: fd is an index into the registered files
	fileIndexAlloc     = ^uint32(0) // IORING_FILE_INDEX_ALLOC: accept into any free slot
	registerFiles2     = 13         // IORING_REGISTER_FILES2
	rsrcRegisterSparse = 1 << 0     // IORING_RSRC_REGISTER_SPARSE
	cqeMore            = 1 << 1     // IORING_CQE_F_MORE

	setupSingleIssuer = 1 << 12 // IORING_SETUP_SINGLE_ISSUER
	setupDeferTaskrun = 1 << 13 // IORING_SETUP_DEFER_TASKRUN
	featSingleMmap    = 1 << 0  // IORING_FEAT_SINGLE_MMAP
	enterGetEvents    = 1 << 0  // IORING_ENTER_GETEVENTS

	offSQRing = 0
	offSQEs   = 0x10000000
)

// ringParams is struct io_uring_params.
type ringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
		userAddr                                                        uint64
	}
	cqOff struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
		userAddr                                                        uint64
	}
}

// sqe is struct io_uring_sqe, as far as these operations use it.
type sqe struct {
	opcode, flags uint8
	ioprio        uint16
	fd            int32
	off, addr     uint64
	len, opFlags  uint32
	userData      uint64
	bufIndex      uint16
	personality   uint16
	fileIndex     uint32
	_             [16]byte
}

type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

type ring struct {
	fd                     int
	sqHead, sqTail, sqMask *uint32
	sqArray                []uint32
	sqes                   []sqe
	cqHead, cqTail, cqMask *uint32
	cqes                   []cqe
	queued                 uint32 // prepared since the last enter
}

func newRing(entries uint32) (*ring, error) {
	var p ringParams
	p.flags = setupSingleIssuer | setupDeferTaskrun
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	if p.features&featSingleMmap == 0 {
		return nil, fmt.Errorf("io_uring: the kernel lacks IORING_FEAT_SINGLE_MMAP")
	}
	size := max(int(p.sqOff.array+p.sqEntries*4), int(p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(cqe{}))))
	rb, err := unix.Mmap(int(fd), offSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap rings: %w", err)
	}
	sb, err := unix.Mmap(int(fd), offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap sqes: %w", err)
	}
	u32 := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&rb[off])) }
	r := &ring{
		fd:     int(fd),
		sqHead: u32(p.sqOff.head), sqTail: u32(p.sqOff.tail), sqMask: u32(p.sqOff.ringMask),
		sqArray: unsafe.Slice(u32(p.sqOff.array), p.sqEntries),
		sqes:    unsafe.Slice((*sqe)(unsafe.Pointer(&sb[0])), p.sqEntries),
		cqHead:  u32(p.cqOff.head), cqTail: u32(p.cqOff.tail), cqMask: u32(p.cqOff.ringMask),
		cqes: unsafe.Slice((*cqe)(unsafe.Pointer(&rb[p.cqOff.cqes])), p.cqEntries),
	}
	return r, nil
}

// prep queues one operation, submitting what is queued first if the
// submission ring is full.
func (r *ring) prep(op uint8, fd int, addr uint64, n, opFlags uint32, ioprio uint16, userData uint64) {
	tail := *r.sqTail // only this thread writes it
	if tail-atomic.LoadUint32(r.sqHead) == uint32(len(r.sqes)) {
		if err := r.enter(0); err != nil {
			panic(err)
		}
	}
	i := tail & *r.sqMask
	r.sqes[i] = sqe{opcode: op, ioprio: ioprio, fd: int32(fd), addr: addr, len: n, opFlags: opFlags, userData: userData}
	r.sqArray[i] = i
	atomic.StoreUint32(r.sqTail, tail+1)
	r.queued++
}

// last is the operation prep queued last, for the fields prep does not set.
func (r *ring) last() *sqe { return &r.sqes[(*r.sqTail-1)&*r.sqMask] }

// enter submits what is queued and waits for at least wait completions.
func (r *ring) enter(wait uint32) error {
	for {
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(r.queued), uintptr(wait), enterGetEvents, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		r.queued = 0
		if errno != 0 && errno != unix.EBUSY && errno != unix.EAGAIN {
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
		return nil
	}
}

// each hands every completion there is to f and consumes them.
func (r *ring) each(f func(userData uint64, res int32, flags uint32)) {
	head, tail := *r.cqHead, atomic.LoadUint32(r.cqTail)
	for ; head != tail; head++ {
		c := r.cqes[head&*r.cqMask]
		atomic.StoreUint32(r.cqHead, head+1)
		f(c.userData, c.res, c.flags)
	}
}

// nofile is the soft RLIMIT_NOFILE, which bounds a registered file table.
func nofile() uint64 {
	var l unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &l)
	return l.Cur
}
