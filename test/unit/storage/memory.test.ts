import { MemoryStorage } from '../../../src/storage/memory';
import { describeStorage } from '../../contract/storage';

describeStorage('memory', async () => ({ storage: new MemoryStorage(), cleanup: async () => {} }));
