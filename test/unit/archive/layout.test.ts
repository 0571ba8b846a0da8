import { CLUSTER_KEY, parseReceivedPartialKey, parseReceiverRecordKey, parseWalKey, receivedPartialKey, receiverRecordKey, walKey, walVariantsPrefix } from '../../../src/archive/layout';
import { splitCodecSuffix } from '../../../src/codec/chain';
import { parseWalFileName, type WalFileName } from '../../../src/postgres/walName';

const n = (s: string): WalFileName => parseWalFileName(s) as WalFileName;

describe('key layout', () => {
  test.each([
    ['000000010000000000000003', '.lz4.pgp', 'walts_v1/wal/0000000100000000/000000010000000000000003.lz4.pgp'],
    ['000000010000000000000003', '', 'walts_v1/wal/0000000100000000/000000010000000000000003'],
    ['0000000200000001000000FF.partial', '.lz4', 'walts_v1/wal/0000000200000001/0000000200000001000000FF.partial.lz4'],
    ['00000002.history', '.pgp', 'walts_v1/wal/history/00000002.history.pgp'],
    ['000000010000000000000002.00000028.backup', '.lz4', 'walts_v1/wal/0000000100000000/000000010000000000000002.00000028.backup.lz4'],
  ])('%s with %j is stored at %s, and parses back', (name, suffix, key) => {
    expect(walKey(n(name), suffix)).toBe(key);
    expect(parseWalKey(key)).toEqual({ name: n(name), codecs: suffix.split('.').filter(Boolean) });
    expect(key.startsWith(walVariantsPrefix(n(name)))).toBe(true);
  });

  test.each([
    CLUSTER_KEY,
    'walts_v1/wal/0000000100000000/000000010000000000000003.gz',
    'walts_v1/wal/0000000100000001/000000010000000000000003.lz4', // wrong folder for the name
    'walts_v1/wal/history/000000010000000000000003.lz4',
    'walts_v1/wal/0000000100000000/../x',
    'other/wal/0000000100000000/000000010000000000000003',
  ])('does not take %s for a WAL object', (key) => {
    expect(parseWalKey(key)).toBeUndefined();
  });

  it('splits only trailing codec suffixes, each once', () => {
    expect(splitCodecSuffix('00000002.history.lz4.pgp')).toEqual({ base: '00000002.history', codecs: ['lz4', 'pgp'] });
    expect(splitCodecSuffix('x.lz4.lz4')).toEqual({ base: 'x.lz4', codecs: ['lz4'] });
    expect(splitCodecSuffix('plain')).toEqual({ base: 'plain', codecs: [] });
    expect(splitCodecSuffix('000000010000000000000003.zst')).toEqual({ base: '000000010000000000000003', codecs: ['zst'] });
    expect(splitCodecSuffix('part_00001.tar.zst.pgp')).toEqual({ base: 'part_00001.tar', codecs: ['zst', 'pgp'] });
    // One compression per object: a second compression suffix belongs to the base.
    expect(splitCodecSuffix('x.zst.lz4')).toEqual({ base: 'x.zst', codecs: ['lz4'] });
    expect(splitCodecSuffix('x.lz4.zst.pgp')).toEqual({ base: 'x.lz4', codecs: ['zst', 'pgp'] });
  });
});

describe('received partial layout', () => {
  it('keys a receiver\'s record in its slot\'s folder; it is no partial and no WAL', () => {
    const key = receiverRecordKey('walts_rx');
    expect(key).toBe('walts_v1/receive/walts_rx/receiver.json');
    expect(parseReceiverRecordKey(key)).toBe('walts_rx');
    expect(parseReceivedPartialKey(key)).toBeUndefined();
    expect(parseWalKey(key)).toBeUndefined();
    expect(parseReceiverRecordKey('walts_v1/receive/a/b/receiver.json')).toBeUndefined();
    expect(parseReceiverRecordKey('walts_v1/receive/walts_rx/000000010000000000000003.partial')).toBeUndefined();
    expect(() => receiverRecordKey('../x')).toThrow(RangeError);
  });

  it('keys a slot\'s segment in progress apart from the WAL archive, and parses it back', () => {
    const key = receivedPartialKey('walts_rx', '000000010000000000000003', '.lz4.pgp');
    expect(key).toBe('walts_v1/receive/walts_rx/000000010000000000000003.partial.lz4.pgp');
    expect(parseReceivedPartialKey(key)).toEqual({ slot: 'walts_rx', segment: '000000010000000000000003', codecs: ['lz4', 'pgp'] });
    expect(parseWalKey(key)).toBeUndefined();
  });

  it.each([
    ['Bad-Slot', '000000010000000000000003'],
    ['', '000000010000000000000003'],
    ['s', '00000001000000000000003'],
    ['s', '../0000000100000000000003'],
    ['s', '000000010000000000000003.partial'],
  ])('refuses slot %j with segment %j', (slot, segment) => {
    expect(() => receivedPartialKey(slot, segment, '')).toThrow(RangeError);
  });

  it.each([
    'walts_v1/receive/s/000000010000000000000003.lz4',
    'walts_v1/receive/S/000000010000000000000003.partial',
    'walts_v1/receive/s/x/000000010000000000000003.partial',
    'walts_v1/receive/s/000000010000000000000003.partial.gz',
    'walts_v1/wal/0000000100000000/000000010000000000000003.partial',
  ])('does not take %s for a received partial', (key) => {
    expect(parseReceivedPartialKey(key)).toBeUndefined();
  });
});
