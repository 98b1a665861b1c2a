/** Wire constants of NFSv3 (RFC 1813), MOUNT v3 (RFC 1813 App. I) and portmapper v2 (RFC 1833). */

export const NFS_PROGRAM = 100003;
export const NFS_V3 = 3;
export const MOUNT_PROGRAM = 100005;
export const MOUNT_V3 = 3;
export const PORTMAP_PROGRAM = 100000;
export const PORTMAP_V2 = 2;

export enum Nfs3Proc {
  NULL = 0,
  GETATTR = 1,
  SETATTR = 2,
  LOOKUP = 3,
  ACCESS = 4,
  READLINK = 5,
  READ = 6,
  WRITE = 7,
  CREATE = 8,
  MKDIR = 9,
  SYMLINK = 10,
  MKNOD = 11,
  REMOVE = 12,
  RMDIR = 13,
  RENAME = 14,
  LINK = 15,
  READDIR = 16,
  READDIRPLUS = 17,
  FSSTAT = 18,
  FSINFO = 19,
  PATHCONF = 20,
  COMMIT = 21,
}

export enum NfsStat3 {
  OK = 0,
  PERM = 1,
  NOENT = 2,
  IO = 5,
  NXIO = 6,
  ACCES = 13,
  EXIST = 17,
  XDEV = 18,
  NODEV = 19,
  NOTDIR = 20,
  ISDIR = 21,
  INVAL = 22,
  FBIG = 27,
  NOSPC = 28,
  ROFS = 30,
  MLINK = 31,
  NAMETOOLONG = 63,
  NOTEMPTY = 66,
  DQUOT = 69,
  STALE = 70,
  REMOTE = 71,
  BADHANDLE = 10001,
  NOT_SYNC = 10002,
  BAD_COOKIE = 10003,
  NOTSUPP = 10004,
  TOOSMALL = 10005,
  SERVERFAULT = 10006,
  BADTYPE = 10007,
  JUKEBOX = 10008,
}

export enum Ftype3 {
  REG = 1,
  DIR = 2,
  BLK = 3,
  CHR = 4,
  LNK = 5,
  SOCK = 6,
  FIFO = 7,
}

export enum StableHow {
  UNSTABLE = 0,
  DATA_SYNC = 1,
  FILE_SYNC = 2,
}

export enum CreateMode {
  UNCHECKED = 0,
  GUARDED = 1,
  EXCLUSIVE = 2,
}

export enum TimeHow {
  DONT_CHANGE = 0,
  SET_TO_SERVER_TIME = 1,
  SET_TO_CLIENT_TIME = 2,
}

export const ACCESS3_READ = 0x01;
export const ACCESS3_LOOKUP = 0x02;
export const ACCESS3_MODIFY = 0x04;
export const ACCESS3_EXTEND = 0x08;
export const ACCESS3_DELETE = 0x10;
export const ACCESS3_EXECUTE = 0x20;

export const FSF3_LINK = 0x01;
export const FSF3_SYMLINK = 0x02;
export const FSF3_HOMOGENEOUS = 0x08;
export const FSF3_CANSETTIME = 0x10;

export const NFS3_FHSIZE = 64;
export const NFS3_COOKIEVERFSIZE = 8;
export const NFS3_CREATEVERFSIZE = 8;
export const NFS3_WRITEVERFSIZE = 8;
/** Longest name and path we accept on the wire (XDR strings are otherwise unbounded). */
export const NAME_MAX = 255;
export const PATH_MAX = 4096;

export enum MountStat3 {
  OK = 0,
  PERM = 1,
  NOENT = 2,
  IO = 5,
  ACCES = 13,
  NOTDIR = 20,
  INVAL = 22,
  NAMETOOLONG = 63,
  NOTSUPP = 10004,
  SERVERFAULT = 10006,
}

export const MNTPATHLEN = 1024;
export const MNTNAMLEN = 255;

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
