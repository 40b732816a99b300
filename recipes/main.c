/* main.c: the tapegrad command line (placeholder until the examples land). */
#include "ag.h"
int main(int argc, char **argv) { (void)argc; (void)argv; return 0; }
