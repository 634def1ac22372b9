/**
 * sealroom in the browser. Frames are sealed and opened in the page (RFC 9605 SFrame over
 * WebCrypto, keys from the room secret the app hands its members), so the relay forwards
 * what it cannot read. See docs/WEB.md.
 */

export * from "./bytes.js";
export * from "./client.js";
export * from "./control.js";
export * from "./envelope.js";
export * from "./errors.js";
export * from "./schedule.js";
export * from "./sframe.js";
export * from "./stream.js";
