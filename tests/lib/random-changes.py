#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""random-changes.py SEED - make 3 to 12 random changes in the current directory
(tests/t/79-wim-commit.t): files new, deleted, renamed, moved, written,
truncated, linked, given an ACL, attributes, a DOS name, times, an object id;
directories made, moved, deleted; named streams (user.* xattrs, ntfs-3g
streams_interface=xattr). Prints how many were made."""
import os, random, struct, sys
# a security descriptor: owner and group S-1-5-32-544, a DACL allowing Everyone full access
SD = bytes.fromhex('0100048014000000240000000000000034000000'
                   '01020000000000052000000020020000' '01020000000000052000000020020000'
                   '02001c000100000000001400ff011f000101000000000001' '00000000')
random.seed(int(sys.argv[1]))
root = '.'
def files():
    out=[]
    for d, ds, fs in os.walk(root):
        for f in fs: out.append(os.path.join(d,f))
    return out
def dirs():
    out=[]
    for d, ds, fs in os.walk(root):
        for x in ds: out.append(os.path.join(d,x))
    return out
n = 0
for i in range(random.randint(3, 12)):
    op = random.choice(['new','del','ren','mv','mkdir','rmtree','write','stream','link','mvdir','trunc',
                        'acl','attrib','dosname','times','objid'])
    fs, ds = files(), dirs()
    try:
        if op=='new':
            d = random.choice(ds+['.'])
            with open(os.path.join(d,'n%d_%d.bin'%(i,random.randint(0,999))),'wb') as f: f.write(os.urandom(random.choice([10,3000,70000])))
        elif op=='del' and fs: os.unlink(random.choice(fs))
        elif op=='ren' and fs:
            f=random.choice(fs); os.rename(f, f+'.r%d'%i)
        elif op=='mv' and fs:
            f=random.choice(fs); d=random.choice(ds+['.']); os.rename(f, os.path.join(d, os.path.basename(f)+'m%d'%i))
        elif op=='mkdir':
            d=random.choice(ds+['.']); p=os.path.join(d,'d%d'%i); os.mkdir(p)
            with open(os.path.join(p,'in.txt'),'w') as f: f.write('x'*i)
        elif op=='rmtree' and ds:
            import shutil; shutil.rmtree(random.choice(ds))
        elif op=='write' and fs:
            with open(random.choice(fs),'r+b') as f: f.seek(random.randint(0,100)); f.write(os.urandom(50))
        elif op=='stream' and fs:
            os.setxattr(random.choice(fs),'user.s%d'%i,os.urandom(random.choice([5,2000])))
        elif op=='link' and fs:
            f=random.choice(fs); d=random.choice(ds+['.']); os.link(f, os.path.join(d,'l%d'%i))
        elif op=='mvdir' and len(ds)>1:
            a=random.choice(ds); b=random.choice(ds+['.'])
            if not os.path.abspath(b).startswith(os.path.abspath(a)): os.rename(a, os.path.join(b,'md%d'%i))
        elif op=='trunc' and fs:
            os.truncate(random.choice(fs), random.randint(0,5000))
        elif op=='acl' and fs+ds:
            os.setxattr(random.choice(fs+ds), 'system.ntfs_acl', SD)
        elif op=='attrib' and fs:
            os.setxattr(random.choice(fs), 'system.ntfs_attrib', struct.pack('<I', random.choice([0x21, 0x22, 0x80])))
        elif op=='dosname' and fs+ds:
            os.setxattr(random.choice(fs+ds), 'system.ntfs_dos_name', b'RND%d~1.TXT' % i)
        elif op=='times' and fs+ds:
            t = 130000000000000000 + random.randint(0, 10**15)
            os.setxattr(random.choice(fs+ds), 'system.ntfs_times', struct.pack('<4Q', t, t, t, t))
        elif op=='objid' and fs+ds:
            os.setxattr(random.choice(fs+ds), 'system.ntfs_object_id', os.urandom(16))
        n+=1
    except OSError as e:
        pass
print(n)
