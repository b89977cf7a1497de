/* test_plugin_nosym.c — a shared object without the attnbench_plugin symbol: test_plugins.py checks
 * that --plugin refuses it with one message. */
int attnbench_plugin_v9(void);
int attnbench_plugin_v9(void) { return 0; }
