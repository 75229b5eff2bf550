/** A serve option or policy folder that must stop the start: its message is shown as it is. */
export class ConfigError extends Error {}
