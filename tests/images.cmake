# Image decoding, dataset scanning and vt-gendata (tests/test_images.c), and
# the reference comparison with PIL and torch (tests/py/test_images_ref.py,
# which runs our decoder through the imgdump helper).
vt_add_test(images SOURCES test_images.c
            LIBS PkgConfig::TURBOJPEG PkgConfig::PNG m)
add_dependencies(test_images vt-gendata)
target_compile_definitions(test_images PRIVATE VT_GENDATA="$<TARGET_FILE:vt-gendata>")

add_executable(imgdump imgdump.c)
target_link_libraries(imgdump PRIVATE vtengine)
vt_add_py_test(images_ref py/test_images_ref.py)
