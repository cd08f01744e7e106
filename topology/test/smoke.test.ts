import t from 'tap';
import { SITE_KINDS } from '../src/types';
t.equal(SITE_KINDS.length, 3);
