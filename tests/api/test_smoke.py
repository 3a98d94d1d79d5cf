def test_world_builds_and_task_waits_for_approval(factory):
    world = factory.world()
    task = factory.api("reporter", "GET", f"/spaces/acme/tasks/{world.task_id}")
    assert task["state"] == "pending_approval"
    assert len(task["commit"]) == 40
