#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""ntfsmeta.py - build NTFS metadata blobs for ntfs-3g's system.* xattrs, and
dump a tree's metadata as ntfs-3g shows it (tests/t/78-dism-wim-metadata.t).

  ntfsmeta.py sd OWNER_RID GROUP_RID MASK [MASK...] : self-relative SECURITY_DESCRIPTOR
        (owner S-1-5-21-1-2-3-OWNER_RID, group ...-GROUP_RID, a DACL with one
        ACCESS_ALLOWED ACE per MASK, for Everyone, SYSTEM, BUILTIN\\Users ...), hex
  ntfsmeta.py symlink TARGET [abs] : IO_REPARSE_TAG_SYMLINK buffer, hex (relative unless abs)
  ntfsmeta.py junction TARGET : IO_REPARSE_TAG_MOUNT_POINT buffer (\\??\\TARGET), hex
  ntfsmeta.py attrib BITS : 4-byte little-endian attribute word, hex
  ntfsmeta.py times CR MOD ACC CHG : 4 NTFS times (100 ns since 1601), hex
  ntfsmeta.py dump ROOT : one line per path and attribute, sorted
"""
import ctypes, hashlib, os, struct, sys

def sid(auth, *subs):
    return struct.pack('<BB', 1, len(subs)) + auth.to_bytes(6, 'big') + b''.join(struct.pack('<I', s) for s in subs)

def ace(mask, s, flags=0):
    return struct.pack('<BBHI', 0, flags, 8 + len(s), mask) + s

def sd(owner_rid, group_rid, masks):
    owner = sid(5, 21, 1, 2, 3, owner_rid)
    group = sid(5, 21, 1, 2, 3, group_rid)
    trustees = [sid(1, 0), sid(5, 18), sid(5, 32, 545), owner]
    aces = b''.join(ace(m, trustees[i % len(trustees)]) for i, m in enumerate(masks))
    acl = struct.pack('<BBHHH', 2, 0, 8 + len(aces), len(masks), 0) + aces
    # header 20 bytes, then owner, group, dacl; SE_SELF_RELATIVE|SE_DACL_PRESENT
    o = 20; g = o + len(owner); d = g + len(group)
    return struct.pack('<BBHIIII', 1, 0, 0x8004, o, g, 0, d) + owner + group + acl

def u16(s):
    return s.encode('utf-16-le')

def symlink(target, absolute):
    sub = u16(('\\??\\' if absolute else '') + target); pr = u16(target)
    body = struct.pack('<HHHHI', 0, len(sub), len(sub), len(pr), 0 if absolute else 1) + sub + pr
    return struct.pack('<IHH', 0xA000000C, len(body), 0) + body

def junction(target):
    sub = u16('\\??\\' + target) + b'\0\0'; pr = u16(target) + b'\0\0'
    body = struct.pack('<HHHH', 0, len(sub) - 2, len(sub), len(pr) - 2) + sub + pr
    return struct.pack('<IHH', 0xA0000003, len(body), 0) + body

_libc = ctypes.CDLL(None, use_errno=True)
_libc.lgetxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.lgetxattr.restype = ctypes.c_ssize_t

def xattr(p, n):
    """lgetxattr with the size asked first: os.getxattr tries a 128-byte buffer
    first, and ntfs-3g answers EIO (not ERANGE) for a longer system.ntfs_acl."""
    bp, bn = os.fsencode(p), n.encode()
    size = _libc.lgetxattr(bp, bn, None, 0)
    if size < 0:
        return None
    buf = ctypes.create_string_buffer(size + 1)
    got = _libc.lgetxattr(bp, bn, buf, size + 1)
    if got < 0:
        raise OSError(ctypes.get_errno(), 'lgetxattr %s %s' % (n, p))
    return buf.raw[:got]

def dump(root):
    out = []
    paths = [root]
    for d, dirs, files in os.walk(root):
        paths += [os.path.join(d, n) for n in dirs + files]
    for p in paths:
        rel = '/' + os.path.relpath(p, root) if p != root else '/'
        if rel.startswith('/.') and rel != '/':
            rel = rel.replace('/./', '/')
        st = os.lstat(p)
        if os.path.islink(p):
            t = os.readlink(p)
            if t.startswith(os.path.abspath(root) + '/'):  # absolute, into the mount (junctions)
                t = '<root>' + t[len(os.path.abspath(root)):]
            out.append((rel, 'type', 'symlink -> ' + t))
        elif os.path.isdir(p):
            out.append((rel, 'type', 'dir'))
        else:
            with open(p, 'rb') as f:
                h = hashlib.sha256(f.read()).hexdigest()
            out.append((rel, 'type', 'file'))
            out.append((rel, 'data', '%d %s' % (st.st_size, h)))
            # allocated size: a sparse file stays sparse
            out.append((rel, 'sparse', 'yes' if st.st_blocks * 512 < st.st_size else 'no'))
        out.append((rel, 'nlink', str(st.st_nlink)))
        try:
            names = os.listxattr(p, follow_symlinks=False)
        except OSError:
            names = []
        for n in sorted(names):
            if n.startswith('user.'):
                v = xattr(p, n)
                out.append((rel, 'stream ' + n, '%d %s' % (len(v), hashlib.sha256(v).hexdigest())))
        for n in ('system.ntfs_acl', 'system.ntfs_attrib', 'system.ntfs_reparse_data',
                  'system.ntfs_dos_name', 'system.ntfs_times', 'system.ntfs_crtime'):
            v = xattr(p, n)
            key = n.split('.', 1)[1]
            out.append((rel, key, '-' if v is None else v.hex()))
    for t in sorted(out):
        print('\t'.join(t))

def main(a):
    c = a[0]
    if c == 'sd':
        b = sd(int(a[1]), int(a[2]), [int(m, 0) for m in a[3:]])
    elif c == 'symlink':
        b = symlink(a[1], len(a) > 2)
    elif c == 'junction':
        b = junction(a[1])
    elif c == 'attrib':
        b = struct.pack('<I', int(a[1], 0))
    elif c == 'times':
        b = b''.join(struct.pack('<Q', int(t)) for t in a[1:5])
    elif c == 'dump':
        return dump(a[1])
    else:
        sys.exit(__doc__)
    print('0x' + b.hex())

main(sys.argv[1:])
