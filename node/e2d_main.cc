// Copyright e2d authors.
//
// The e2d binary (see node/runtime/cli.h for the command line).

#include "node/runtime/cli.h"

int main(int argc, char** argv) { return e2d::node::CliMain(argc, argv); }
