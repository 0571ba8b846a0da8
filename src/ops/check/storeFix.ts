/** What to do about a store failure, told from the error walts' stores raise (storage/s3.ts, storage/fs.ts). */
import { ConfigError, UnavailableError } from '../../errors';
import { message } from './item';

export function storeFix(err: unknown, kind: 's3' | 'file'): string {
  const text = message(err);
  if (/NoSuchBucket/.test(text)) return 'create the bucket, or correct the bucket name in WALTS_STORE (walts never creates it)';
  if (/does not exist|is not a directory/.test(text)) return 'mount the share or create the directory, or correct WALTS_STORE (walts never creates it)';
  if (/read-only file system/.test(text)) return "the store's file system is mounted read-only: remount it read-write";
  if (/permission denied/.test(text)) return "give this user (the one PostgreSQL runs as) read and write access to the store directory";
  if (err instanceof ConfigError) {
    return kind === 's3'
      ? 'check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, instance role) and that the bucket policy allows this prefix'
      : 'fix the store setting named above';
  }
  if (err instanceof UnavailableError && err.transient) {
    return kind === 's3' ? 'the service did not answer within the retry deadline: check WALTS_S3_ENDPOINT, DNS, the network and proxies' : 'the directory did not answer in time: check the mount (NFS server)';
  }
  if (/disk is full|ENOSPC|EDQUOT/.test(text)) return 'free space on the store (or raise the quota)';
  return 'see the message; fix the store or WALTS_STORE and run walts check again';
}
