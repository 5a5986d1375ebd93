// Makes rnnfuse._C importable. Importing it runs the static TORCH_LIBRARY and
// TORCH_LIBRARY_IMPL registrations; the ops are then reached through
// torch.ops.rnnfuse, so no Python bindings are needed here.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "rnnfuse operator registrations", -1, nullptr,
  };
  return PyModule_Create(&module_def);
}
}
