/**
 * pushgate browser client as an ES module:
 *
 *   import { Pushgate } from '/realtime/client.mjs';
 *
 * It loads the classic script next to it (which defines `globalThis.Pushgate`)
 * and re-exports that class, so a page may use either form, or both.
 */
import './client.js';

export const Pushgate = globalThis.Pushgate;
export const PushgateError = Pushgate.PushgateError;
export default Pushgate;
