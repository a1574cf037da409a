# Weight-file formats: safetensors and Keras HDF5 readers/writers.
vt_add_test(weightfiles SOURCES test_weightfiles.c LIBS PkgConfig::HDF5 LABELS unit)

# tensordump: prints a weight file's tensors as JSON (or converts it to
# safetensors with our writer) so the Python reference test can compare our
# reader and writer with numpy/torch/h5py/safetensors.
add_executable(tensordump tensordump.c)
target_link_libraries(tensordump PRIVATE vtengine)
add_dependencies(test_weightfiles tensordump)
vt_add_py_test(weightfiles_ref py/test_weightfiles_ref.py LABELS unit)
