output "worker_public_ip" {
  description = "Public IP of the worker."
  value       = aws_instance.worker.public_ip
}

output "worker_private_ip" {
  description = "Private IP of the worker (its swarm address)."
  value       = aws_instance.worker.private_ip
}

output "label_command" {
  description = "Run on the manager once the worker has joined (EC2 Ubuntu hostnames are ip-a-b-c-d): the stack places the workload by this label."
  value       = "docker node update --label-add role=worker ip-${replace(aws_instance.worker.private_ip, ".", "-")}"
}
