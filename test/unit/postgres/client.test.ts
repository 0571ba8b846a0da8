import { resolveConnectSettings } from '../../../src/postgres/client';

describe('connection settings of a physical replication session', () => {
  const env = { PGHOST: '127.0.0.1', PGUSER: 'walrecv', PGDATABASE: 'app', HOME: '/nonexistent' };

  it('uses the database name `replication`, as pg_receivewal (its .pgpass line), whatever PGDATABASE says', () => {
    const s = resolveConnectSettings({ env, replication: true });
    expect(s.replication).toBe(true);
    expect(s.database).toBe('replication');
    expect(s.user).toBe('walrecv');
  });

  it('an explicit database still wins', () => {
    expect(resolveConnectSettings({ env, replication: true, overrides: { database: 'other' } }).database).toBe('other');
  });

  it('ordinary sessions are unchanged', () => {
    const s = resolveConnectSettings({ env });
    expect(s.replication).toBe(false);
    expect(s.database).toBe('app');
  });
});
