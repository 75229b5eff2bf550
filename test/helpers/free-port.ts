/**
 * A loopback port nothing listens on right now, for servers whose configuration names their port
 * (PostgreSQL, HAProxy) and that cannot report one they picked themselves: the benches' own.
 */
export { freePort } from '../../bench/lib/daemons';
